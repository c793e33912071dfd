"""Staged rollouts: a config or firmware version delivered to many cabinets, wave by wave.

An operator creates a rollout and starts, pauses, resumes, aborts it or retries its failures
(`services`); those actions only change state and write an audit row (`transitions`). The work
(planning the targets, issuing commands, judging waves against their thresholds) is
`driver.rollout_advance`, run by Celery (`tasks`): beat every ROLLOUT_TICK_S and once right
after an operator action. A command's result reaches its target as it is recorded
(`results.rollout_command_finished`, called by cabinets.services.commands); receipts and expiries on
the next tick. `plans` parses wave plans; `selectors` holds the reads the admin and the driver
share.

Nothing is re-exported here: cabinets.services.commands imports `results`, and the driver
imports cabinets.services.commands, so importing every module with the package would be a
cycle.
"""
