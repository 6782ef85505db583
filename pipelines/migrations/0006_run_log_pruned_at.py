# Retention (operations.retention) marks the runs whose logs it deleted.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pipelines", "0005_encrypted_secrets"),
    ]

    operations = [
        migrations.AddField(
            model_name="pipelinerun",
            name="log_pruned_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
