"""Test helpers: real databases, a real RabbitMQ, and a small v2 client."""
