"""Reference cabinet agent and the cabinet link protocol (docs/cabinet-protocol.md).

Framework-free: the platform imports `cabinet_agent.protocol`; nothing here imports Django.
"""

__version__ = "1.0.0"
