"""Delivery channels behind one small interface (`base.Channel`): SMS, Zalo ZNS, e-mail, webhooks."""
