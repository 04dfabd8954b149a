"""Serve one demo agent on its own, e.g. the writer with a planted bug for ``agent-gateway contracts fuzz``::

python -m gateway.demo.serve_agent writer --port 8003 --plant-bug non-ascii-topic
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence

from aiohttp import web

from gateway.demo.agents import AGENTS, BUGS, planted
from gateway.demo.harness import agent_app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.demo.serve_agent", description=__doc__)
    parser.add_argument("agent", choices=sorted(AGENTS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument("--plant-bug", choices=BUGS, help="the writer only: break the contract for this input class")
    args = parser.parse_args(argv)
    path, agent = AGENTS[args.agent]
    if args.plant_bug:
        if args.agent != "writer":
            parser.error("--plant-bug applies to the writer only")
        agent = planted(args.plant_bug)
    web.run_app(agent_app(args.agent, path, agent, Counter()), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
