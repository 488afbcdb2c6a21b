"""The waiting list and the offers of freed slots: entries, the offer engine, signed offer links."""
