"""The fleet admin, one module per concern. Every changelist is a fixed number of queries
(select_related, subquery annotations, no full counts); every operation goes through a service
and is audited there. Secrets never appear: credentials are shown once, on the page the
operation redirects to. Operations that issue or revoke credentials need
`cabinets.manage_credentials` and a session verified with the staff second factor
(core/staff_otp.py). Cabinets belong to no carrier: carrier staff see none of this
(core.admin.StaffScopedAdmin).

Importing the package registers every model admin."""

from cabinets.admin import cabinets, commands, compartments, provisioning, rollouts

__all__ = ["cabinets", "commands", "compartments", "provisioning", "rollouts"]
