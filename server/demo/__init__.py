"""The browser demo client served at `/demo/` and the dev-only sign-in route it uses (docs/demo.md)."""
