"""Query, Mutation and Subscription resolvers, the per-request Context and DataLoaders."""
