"""Calls: state machine, SDP/ICE relay rules, TURN credentials, quality probes. Imports no transport."""
