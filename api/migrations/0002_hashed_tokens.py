from django.db import migrations

from api.tokens import token_digest


def hash_existing_tokens(apps, schema_editor):
    # Each token keeps working: its holder sends the same token, whose digest is now the key.
    Token = apps.get_model("authtoken", "Token")
    for key in list(Token.objects.values_list("key", flat=True)):
        Token.objects.filter(key=key).update(key=token_digest(key))


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_initial"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]

    operations = [
        # One way: a digest cannot be turned back into its token. Going back means issuing
        # new tokens (manage.py drf_create_token -r).
        migrations.RunPython(hash_existing_tokens, migrations.RunPython.noop, elidable=False),
    ]
