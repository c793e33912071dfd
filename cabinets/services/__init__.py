"""Writes of the cabinets app, one module per concern:

- `lifecycle`: a cabinet's lifecycle state and a compartment's service state;
- `credentials`: issuing, rotating and revoking a cabinet's link credential;
- `commands`: storing, pushing and finishing commands (unlocks, config, firmware);
- `messages`: what the link does with each event a cabinet sends;
- `liveness`: heartbeats, telemetry and who is online;
- `simulation`: provisioning simulated fleets.
"""
