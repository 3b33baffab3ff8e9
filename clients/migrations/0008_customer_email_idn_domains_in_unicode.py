"""Stored emails with a punycode domain (x@xn--e1afmkfd.xn--p1ai) get the Unicode form
(x@пример.рф) that clients.normalize.normalize_email now gives every spelling of an address, so
a look-up or an audience hash of either spelling finds the same person."""

import idna
from django.db import migrations


def idn_domains_to_unicode(apps, schema_editor):
    Customer = apps.get_model("clients", "Customer")
    found = Customer.objects.filter(email__contains="xn--").values_list("pk", "email")
    for pk, email in found.iterator(chunk_size=2000):
        local, _at, domain = email.rpartition("@")
        try:
            unicode_email = f"{local}@{idna.decode(domain)}"
        except (idna.IDNAError, UnicodeError):
            continue  # not a valid IDN: left as it was stored
        if unicode_email != email and len(unicode_email) <= 254:
            Customer.objects.filter(pk=pk).update(email=unicode_email)


class Migration(migrations.Migration):
    dependencies = [("clients", "0007_webhook_secret_in_the_amocrm_path")]

    operations = [migrations.RunPython(idn_domains_to_unicode, migrations.RunPython.noop)]
