"""DoltHub's SQL API: the client, safe SQL literals, paging, exact parsing, typed fetchers."""
