"""Drives Mailporter's MCP server with the official Python MCP client, as an agent host would.

Reads a plan (JSON) on stdin and prints what the client saw (JSON) on stdout; the Swift test
decides what is right. A plan:

  {"transport": {"kind": "stdio", "command": "...", "args": ["mcp"], "env": {...}}
              | {"kind": "http", "url": "http://127.0.0.1:PORT/mcp", "token": "mp_live_..."},
   "steps": [{"op": "list_tools"},
             {"op": "call", "tool": "get_migration", "arguments": {...}},
             {"op": "poll", "tool": "get_migration", "arguments": {...},
              "until": ["completed", "failed"], "timeout": 180}]}

or {"concurrent": [plan, plan, ...]}: each plan in its own session, all at once.
"""

import json
import sys
import time

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def call_result(result):
    texts = [item.text for item in result.content if getattr(item, "type", None) == "text"]
    return {"is_error": bool(result.is_error), "text": texts, "structured": result.structured_content}


def status_of(result):
    data = (result.structured_content or {}).get("data") or {}
    return data.get("status"), data.get("poll_hint_seconds")


async def run_steps(session, steps):
    initialized = await session.initialize()
    out = {
        "server": {"name": initialized.server_info.name, "protocol_version": initialized.protocol_version},
        "results": [],
    }
    for step in steps:
        try:
            if step["op"] == "list_tools":
                listed = await session.list_tools()
                tools = [tool.model_dump(by_alias=True, exclude_none=True, mode="json") for tool in listed.tools]
                out["results"].append({"tools": tools})
            elif step["op"] == "call":
                result = await session.call_tool(step["tool"], step.get("arguments") or {})
                out["results"].append(call_result(result))
            elif step["op"] == "poll":
                # An agent waits poll_hint_seconds between reads; the test reads faster, and
                # records the hints it was given.
                deadline = time.monotonic() + step.get("timeout", 180)
                polls, hints, statuses = 0, [], []
                while True:
                    result = await session.call_tool(step["tool"], step.get("arguments") or {})
                    polls += 1
                    status, hint = status_of(result)
                    hints.append(hint)
                    if not statuses or statuses[-1] != status:
                        statuses.append(status)
                    if result.is_error or status in step["until"] or time.monotonic() > deadline:
                        break
                    await anyio.sleep(step.get("interval", 0.3))
                entry = call_result(result)
                entry.update({"polls": polls, "hints": hints, "statuses": statuses})
                out["results"].append(entry)
            elif step["op"] == "sleep":
                await anyio.sleep(step["seconds"])
                out["results"].append({})
            else:
                raise ValueError(f"unknown op {step['op']}")
        except Exception as error:  # the test reads what failed, e.g. an expired session
            out["results"].append({"exception": f"{type(error).__name__}: {error}"})
    return out


async def run_plan(plan):
    transport = plan["transport"]
    if transport["kind"] == "stdio":
        parameters = StdioServerParameters(
            command=transport["command"], args=transport.get("args", []), env=transport.get("env", {})
        )
        with open(transport.get("stderr", "/dev/null"), "w") as errlog:
            async with stdio_client(parameters, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    return await run_steps(session, plan["steps"])
    headers = {"Authorization": f"Bearer {transport['token']}"}
    async with create_mcp_http_client(headers=headers) as client:
        async with streamable_http_client(transport["url"], http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                return await run_steps(session, plan["steps"])


async def main():
    plan = json.load(sys.stdin)
    if "concurrent" in plan:
        outputs = [None] * len(plan["concurrent"])

        async def one(index, sub):
            outputs[index] = await run_plan(sub)

        async with anyio.create_task_group() as group:
            for index, sub in enumerate(plan["concurrent"]):
                group.start_soon(one, index, sub)
        print(json.dumps({"sessions": outputs}))
    else:
        print(json.dumps(await run_plan(plan)))


anyio.run(main)
