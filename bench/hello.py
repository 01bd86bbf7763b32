"""The bare FastAPI peer of `make bench`'s API figures: one JSON "hello world" route.

Served with the same uvicorn options as `tally serve` (dashboard_api.server.UVICORN_OPTIONS).
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

from dashboard_api.server import UVICORN_OPTIONS

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello world"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), **UVICORN_OPTIONS)
