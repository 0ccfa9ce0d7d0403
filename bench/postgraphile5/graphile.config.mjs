// PostGraphile v5 for bench/watchlist_vs_postgraphile.py: the amber preset, the database and
// port from the environment, no GraphiQL, no explain, a pool of 10 (= our services.db pool).
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";

export default {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: process.env.DATABASE_URL,
      schemas: ["public"],
      poolConfig: { max: 10 },
    }),
  ],
  grafserv: {
    host: "127.0.0.1",
    port: Number(process.env.PORT),
    graphiql: false,
    watch: false,
  },
  grafast: { explain: false },
};
