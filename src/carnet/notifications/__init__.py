"""Notifications: rules over audit traces, a transactional outbox, and a worker delivering by e-mail, SMS
and the in-app notification centre."""
