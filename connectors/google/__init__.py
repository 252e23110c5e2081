"""Google: only signing in to the hub (`login.py`) with OpenID Connect userinfo."""
