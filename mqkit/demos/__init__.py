"""Demos that show mqkit at work on any broker: `orders` (the main job: publish, handle,
retry, dead-letter, live) and `peak_shaving` (a burst drained at a rate limit, charted).
`mqkit demo` runs them; a program can too: `await orders_demo("sqlite:///demo.db")`."""
