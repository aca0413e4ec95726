"""`audiosearch serve`: uvicorn around create_app."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings
from models import Encoder


def serve(
    index_dir: Path, host: str, port: int, model: str, device: str, loaded: Encoder | None = None,
    onnx_dir: Path | None = None, allow_untrained: bool = False,
) -> int:
    """Run until interrupted. Other settings (admin token, CORS origins, ...) come from AUDIOSEARCH_* variables."""
    import uvicorn

    from app.main import create_app

    settings = Settings(
        index_dir=index_dir, model=model, device=device, onnx_dir=onnx_dir, allow_untrained=allow_untrained
    )
    app = create_app(settings, model=loaded)
    print(f"audiosearch: serving {index_dir} at http://{host}:{port}/  (API docs: /docs)", flush=True)  # noqa: T201
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
    return 0
