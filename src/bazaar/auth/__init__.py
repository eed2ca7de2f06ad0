"""The auth service: users, roles, password logins, tokens, signing keys and revocation.

It is the platform's OAuth 2.0 authorization server: it signs RS256 access tokens
(verified by the gateway and every service from its JWKS), rotates opaque refresh
tokens in families, issues client-credentials tokens to services, and feeds the
gateway the ids of revoked access tokens.
"""
