"""Bitrix24: webhook payload formats (formats.py) and the REST client of a client's portal
(client.py: crm.contact.get, crm.deal.get through its inbound webhook)."""
