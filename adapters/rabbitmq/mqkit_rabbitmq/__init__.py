"""RabbitMQ backend for mqkit (`amqp://`, `amqps://`)."""
