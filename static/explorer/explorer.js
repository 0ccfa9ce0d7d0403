// Starts GraphiQL for the endpoint this page was served from (no inline script: strict CSP).
// Queries and mutations go over HTTP; subscriptions over WebSocket (graphql-transport-ws).
// The Headers tab's JSON is sent with every HTTP request AND as the WebSocket
// `connection_init` payload, so a pasted {"Authorization": "Bearer …"} works for both.
(function () {
  "use strict";

  var WELCOME = [
    "# Material Changes API, explorer served offline by this server.",
    "#",
    "# No token needed: popularStocks, searchStocks, stock, health.",
    "# Everything else: open Headers (below) and paste",
    '#   {"Authorization": "Bearer <token>"}',
    "# (`make run` prints the demo user's token).",
    "#",
    "# Run: Ctrl-Enter or the ▶ button. Then try:",
    "#   { watchlist { count items { stock { ticker } } } }",
    "#   subscription { alertCreated { headline } }",
    "",
    "{",
    "  popularStocks(limit: 5) {",
    "    ticker",
    "    name",
    "    signal { valuationRegime trendPosition }",
    "  }",
    "}",
    "",
  ].join("\n");

  var endpoint = window.location.origin + window.location.pathname;
  var subscriptionUrl = endpoint.replace(/^http/, "ws");
  var fetchers = {};

  // One toolkit fetcher per distinct header set: its WebSocket client sends those headers
  // as connectionParams, which is how this API authenticates subscriptions.
  function fetcherFor(headers) {
    var key = JSON.stringify(headers || {});
    if (!fetchers[key]) {
      fetchers[key] = GraphiQL.createFetcher({
        url: endpoint,
        subscriptionUrl: subscriptionUrl,
        wsConnectionParams: headers || {},
      });
    }
    return fetchers[key];
  }

  function fetcher(params, options) {
    var headers = (options && options.headers) || {};
    return fetcherFor(headers)(params, options);
  }

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: WELCOME,
      defaultEditorToolsVisibility: "headers",
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      inputValueDeprecation: true,
    })
  );
})();
