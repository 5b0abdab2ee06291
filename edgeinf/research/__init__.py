"""The offline research kit: answer gradable tasks, train routers, evaluate them (train extra)."""
