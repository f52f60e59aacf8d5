"""A real MCP client (the official Python SDK) against Claude Nexus's /mcp, for tests/mcp.rs.

usage: mcp_client.py URL KEY

With a key: lists the prompts, renders `review` with {"language": "Rust"}, asks for a prompt
id that climbs out of the folder, then waits for the server's prompts/list_changed
notification and lists again. Each step prints one JSON line; after `{"waiting": true}` the
test changes the prompts folder. Without a key (""), it prints {"refused": "..."} when the
server turns the session down, and exits 3.
"""

import asyncio
import json
import sys

import anyio
import mcp.types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def say(**line):
    print(json.dumps(line), flush=True)


async def main(url: str, key: str) -> int:
    changed = anyio.Event()

    async def on_message(message):
        if isinstance(message, types.ServerNotification) and isinstance(
            getattr(message, "root", message), types.PromptListChangedNotification
        ):
            changed.set()
        elif isinstance(message, types.PromptListChangedNotification):
            changed.set()

    headers = {"x-api-key": key} if key else {}
    try:
        async with create_mcp_http_client(headers=headers) as http:
            async with streamable_http_client(url, http_client=http) as (read, write):
                async with ClientSession(read, write, message_handler=on_message) as session:
                    await session.initialize()
                    listed = await session.list_prompts()
                    say(prompts=sorted(p.name for p in listed.prompts))
                    rendered = await session.get_prompt("review", {"language": "Rust"})
                    say(rendered=rendered.messages[0].content.text)
                    try:
                        await session.get_prompt("../outside", {})
                        say(traversal="answered")
                    except Exception as e:  # the server's JSON-RPC error
                        say(traversal_error=str(e))
                    say(waiting=True)
                    with anyio.fail_after(30):
                        await changed.wait()
                    listed = await session.list_prompts()
                    say(prompts_after=sorted(p.name for p in listed.prompts))
    except Exception as e:
        if key:
            raise
        say(refused=repr(e))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
