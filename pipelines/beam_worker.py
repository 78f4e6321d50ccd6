"""Beam's SDK harness for local multi-process runs, started with Mixlab's log level (``-m pipelines.beam_worker``).

Beam's own harness (``apache_beam.runners.worker.sdk_worker_main``) logs at INFO on stderr from the moment it
starts ("Python sdk harness starting", channel set-up, "apitools not found", "No semi_persistent_directory"),
before any pipeline option can lower it, and the in-process runner passes it no options. This entry point installs
one stderr handler at WARNING first (INFO with ``MIXLAB_VERBOSE=1``, what ``mixlab -v`` sets), dropping the known
start-up chatter, then runs Beam's harness unchanged.
"""

from __future__ import annotations

import logging
import os
import sys

VERBOSE_ENV = "MIXLAB_VERBOSE"
# Messages Beam logs on every start that no user can act on; `mixlab -v` shows them again.
NOISE = (
    "apitools not found",
    "No semi_persistent_directory found",
    "If direct_num_workers is not equal to 1",
    "BatchElements statistics",
)


class DropNoise(logging.Filter):
    """Drop Beam's start-up chatter (see :data:`NOISE`) unless Mixlab runs verbose."""

    def filter(self, record: logging.LogRecord) -> bool:
        if os.environ.get(VERBOSE_ENV) == "1":
            return True
        message = record.getMessage()
        return not any(noise in message for noise in NOISE)


def main() -> None:
    level = logging.INFO if os.environ.get(VERBOSE_ENV) == "1" else logging.WARNING
    handler = logging.StreamHandler()
    handler.setLevel(level)  # Beam sets the root logger to INFO while bootstrapping: filter at the handler
    handler.addFilter(DropNoise())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s beam-worker %(name)s: %(message)s",
                                           datefmt="%H:%M:%S"))
    logging.getLogger().addHandler(handler)
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
