# The dashboard's "doors left open" alert looks for the few open doors among 200,000
# compartments; a partial index keeps that from being a full scan. Raw SQL, because the
# Compartment model's Meta belongs to the cabinet link (PostgreSQL and SQLite both support it).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('cabinets', '0004_fleet_admin'),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX cabinets_compartment_door_open ON cabinets_compartment (cabinet_id, label) "
            "WHERE door_state = 'open'",
            reverse_sql="DROP INDEX cabinets_compartment_door_open",
        ),
    ]
