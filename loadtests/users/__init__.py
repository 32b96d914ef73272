"""Locust user classes, one module per user type; `loadtests/locustfile.py` imports them all."""
