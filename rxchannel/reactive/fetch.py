"""A file fetch (from one hub or several at once, each chunk verified) as a ReactiveX Observable.

    fetch_file(peer, "big.iso", "out/", peers=[other]).subscribe(on_next=print)

Subscribing starts :func:`rxchannel.files.fetch_file` on the running asyncio loop; the
Observable emits its :class:`~rxchannel.files.TransferResult` once the file is in place,
verified, then completes, or errors with what the fetch raised. Disposing the subscription
before that cancels the fetch (its ``.part`` is kept, as after any interruption).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxchannel.files import TransferResult
from rxchannel.files import fetch_file as _fetch_file
from rxchannel.runtime import Peer

__all__ = ["fetch_file"]


def fetch_file(peer: Peer, remote_path: str, out: str | os.PathLike[str], **options: Any) -> Observable[TransferResult]:
    """``fetch_file(peer, remote_path, out, **options)`` as a cold Observable of its one result.

    ``options`` are :func:`rxchannel.files.fetch_file`'s (``peers``, ``verify``, ``window``,
    ``progress``, ...). Needs a running asyncio loop when subscribed.
    """

    def subscribe(observer: abc.ObserverBase[TransferResult], scheduler: abc.SchedulerBase | None = None) -> Disposable:
        task = asyncio.get_running_loop().create_task(_fetch_file(peer, remote_path, out, **options))

        def done(finished: asyncio.Task[TransferResult]) -> None:
            if finished.cancelled():
                return
            error = finished.exception()
            if isinstance(error, Exception):
                observer.on_error(error)
            elif error is not None:  # KeyboardInterrupt, SystemExit: not the Observable's to report
                raise error
            else:
                observer.on_next(finished.result())
                observer.on_completed()

        task.add_done_callback(done)

        def cancel() -> None:
            task.cancel()  # a no-op once it is done

        return Disposable(cancel)

    return reactivex.create(subscribe)
