"""Writes of the parcel flows, one module per concern:

- `parcels`: a parcel's lifecycle (announce, the one transition service, cancel, extend);
- `deposits`: reserving a compartment and opening it for a courier's deposit or a sender's
  drop-off;
- `releases`: opening a door for a pickup or a collection, and what a closing door completes;
- `deadlines`: pickup deadlines passing;
- `people`: courier PINs and carrier API keys.

Locks are taken through `courier.lock_objects` (compartment before parcel, everywhere).
"""
