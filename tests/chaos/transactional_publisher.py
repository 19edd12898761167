"""A publisher process for the transaction chaos cases: batch after batch, each one
`broker.transaction()`.

    python -m tests.chaos.transactional_publisher URL TOPIC --first B --size N [--batches M]

Batch b is N messages with ids `b<b>.<i>`, spread over keys. Prints `committing <b>` just
before a block ends (its records then go to Kafka, so a SIGKILL from here on cuts a commit
short) and `committed <b>` once the commit returned.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import mqkit


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("topic")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=sys.maxsize)
    args = parser.parse_args()
    body = b"x" * 200
    async with mqkit.connect(args.url) as broker:
        for b in range(args.first, args.first + args.batches):
            async with broker.transaction():
                await broker.publish_batch(
                    [
                        mqkit.Message.create(args.topic, body, key=f"k{i % 16}", id=f"b{b}.{i}")
                        for i in range(args.size)
                    ]
                )
                print(f"committing {b}", flush=True)
            print(f"committed {b}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
