"""python -m cabinet_agent --config agent.toml [--server-url URL] [--log-level LEVEL]"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from .agent import CabinetAgent
from .config import ConfigError, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cabinet_agent", description="Reference cabinet agent"
    )
    parser.add_argument("--config", required=True, help="path to the agent's TOML configuration")
    parser.add_argument("--server-url", help="override server.url (ws:// or wss://)")
    parser.add_argument("--state-dir", help="override agent.state_dir")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    return parser.parse_args(argv)


async def _run(agent: CabinetAgent) -> None:
    agent.install_signal_handlers()
    await agent.run()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_config(args.config).with_overrides(
            server_url=args.server_url,
            state_dir=Path(args.state_dir) if args.state_dir else None,
        )
    except (ConfigError, TypeError, ValueError) as exc:
        logging.getLogger("cabinet_agent").error("configuration: %s", exc)
        return 2
    asyncio.run(_run(CabinetAgent(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
