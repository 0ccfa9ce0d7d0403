"""Delivery outside the app: signed webhooks and email digests, sent from the deliveries outbox."""
