from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('clusters', '0011_capi'),
    ]

    operations = [
        migrations.AddField(
            model_name='clusterwatchstate',
            name='events_moved',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
