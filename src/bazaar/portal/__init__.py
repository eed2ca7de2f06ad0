"""The web portal: server-rendered pages over the public API, for people in a browser.

The portal is a client of the platform like any other: it holds no database and
calls only the public API through the gateway, with the signed-in user's own token.
Pages are Jinja2 templates made lively with htmx (shipped in ``static/``, no CDN);
the auction page follows the auction's event stream through a same-origin relay.
"""
