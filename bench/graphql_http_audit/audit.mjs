// The graphql-http package's GraphQL-over-HTTP audit against a running server:
//   npm ci --prefix bench/graphql_http_audit --ignore-scripts   (once)
//   node bench/graphql_http_audit/audit.mjs http://127.0.0.1:8000/graphql
// Prints every check that is not "ok", then one JSON line of counts; exits 1 unless all are ok.
import { auditServer } from 'graphql-http';

const url = process.argv[2] ?? 'http://127.0.0.1:8000/graphql';
const results = await auditServer({ url });
const counts = { total: results.length, ok: 0 };
for (const result of results) {
  counts[result.status] = (counts[result.status] ?? 0) + 1;
  if (result.status !== 'ok') {
    console.log(`${result.status} ${result.id} ${result.name}: ${result.reason}`);
  }
}
console.log(JSON.stringify(counts));
process.exit(counts.ok === counts.total ? 0 : 1);
