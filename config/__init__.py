"""Configuration, logging and the base error type shared by every package."""
