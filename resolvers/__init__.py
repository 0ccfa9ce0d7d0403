"""Query, Mutation and Subscription resolvers and the per-request DataLoaders."""
