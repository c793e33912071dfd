"""Run a command with REDIS_URL pointing at a Redis: the one given, or an embedded one."""

from __future__ import annotations

import os
import subprocess
import sys

import embedded_redis


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    env = dict(os.environ)
    server = None
    if not env.get("REDIS_URL"):
        server = embedded_redis.start(preferred_port=int(env.get("EMBEDDED_REDIS_PORT", "6381")))
        env["REDIS_URL"] = server.url
        print(f"embedded Redis on {server.url}", flush=True)
    try:
        return subprocess.call(argv, env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
