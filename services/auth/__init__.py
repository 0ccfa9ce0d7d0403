"""Bearer tokens: HS256 secrets and RS256/ES256 keys from a JWKS file or URL."""
