"""Proving the value: chain results against holdout, test design, attribution, ad spend and
calls, monthly KPIs, and the value sent back to Yandex (Metrica offline conversions, Direct bid
modifiers). Sits above campaigns: it reads chains, audiences and scores, nothing reads it but
the portal, the demo and config."""
