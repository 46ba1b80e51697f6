"""The server's endpoints, one router per family; `create_app` includes them in this order."""

from lantern.serve.routes import chat, completions, health, models, playground, tokenize

ROUTERS = (playground.router, health.router, models.router, tokenize.router,
           completions.router, chat.router)

__all__ = ["ROUTERS"]
