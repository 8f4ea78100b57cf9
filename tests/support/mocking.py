"""A mock monitor that keeps every RegisterResource request, for component tests."""

from __future__ import annotations

from typing import Any

import pulumi


class Recorder(pulumi.runtime.mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.requests: list[Any] = []

    def RegisterResource(self, request: Any) -> Any:
        self.requests.append(request)
        return super().RegisterResource(request)
