"""`facegan serve`: its flags and config keys are the fields of facegan.serve.ServeConfig and ServeLimits."""

from __future__ import annotations

from jsonargparse import Namespace

from facegan.cli.flags import Verb, dataclass_arguments, given_fields, verb_parser
from facegan.errors import FaceganError


def serve_verb() -> Verb:
    from facegan.serve.config import ServeConfig
    from facegan.serve.limits import ServeLimits

    p = verb_parser(
        "serve",
        description="Serve a 'this face does not exist' page and PNG/GIF API. The flags are "
        "the fields of facegan.serve.ServeConfig and ServeLimits.",
    )
    dataclass_arguments(p, ServeConfig)
    dataclass_arguments(p.add_argument_group("limits (each holds per --workers process)"), ServeLimits)
    return Verb("serve", p, _cmd_serve)


def _cmd_serve(args: Namespace) -> int:
    from facegan.serve.config import ServeConfig
    from facegan.serve.limits import ServeLimits

    limits = ServeLimits(**given_fields(args, ServeLimits))
    cfg = ServeConfig(**given_fields(args, ServeConfig), limits=limits)
    try:
        from facegan.serve import serve
    except ImportError as err:
        raise FaceganError(
            f"facegan serve needs its extras ({err.name} is missing): pip install 'facegan[serve]'"
        ) from None
    serve(cfg)
    return 0
