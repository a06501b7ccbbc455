"""How the corpus was made: each case is base.yaml with a few textual edits (`PYTHONPATH=.
python tests/compat/make_cases.py`, then `python -m tests.compat.regen`). A new spec whose old
examples no longer fit its schema has them dropped: the case is about the schema."""

import pathlib

root = pathlib.Path("tests/compat")
base = (root / "base.yaml").read_text()
V = ("version: 1.0.0", "version: 1.0.0")
cases = {
    "optional_field_added": [
        (
            "          note: {type: string, maxLength: 100}\n",
            "          note: {type: string, maxLength: 100}\n          coupon: {type: string, minLength: 4}\n",
        ),
        ("version: 1.0.0", "version: 1.1.0"),
    ],
    "required_field_added": [
        (
            "required: [eventId, eventType, orderId, total, items]",
            "required: [eventId, eventType, orderId, total, items, channel]",
        ),
        (
            "          note: {type: string, maxLength: 100}\n",
            "          note: {type: string, maxLength: 100}\n          channel: {type: string, enum: [web, app]}\n",
        ),
        ("version: 1.0.0", "version: 2.0.0"),
    ],
    "optional_field_removed": [
        ("          note: {type: string, maxLength: 100}\n", ""),
        ("version: 1.0.0", "version: 1.1.0"),
    ],
    "made_required": [
        (
            "required: [eventId, eventType, orderId, total, items]",
            "required: [eventId, eventType, orderId, total, items, note]",
        ),
        ("version: 1.0.0", "version: 1.1.0"),
    ],
    "bounds_loosened": [
        ("maxLength: 100}", "maxLength: 500}"),
        ("minimum: 1, maximum: 99}", "minimum: 1, maximum: 999}"),
        ("minItems: 1\n            maxItems: 10", "minItems: 1\n            maxItems: 50"),
        ("version: 1.0.0", "version: 1.1.0"),
    ],
    "bounds_tightened": [
        ("minLength: 3, maxLength: 20", "minLength: 5, maxLength: 20"),
        (
            "{type: number, minimum: 0, multipleOf: 0.01}",
            "{type: number, minimum: 0, multipleOf: 0.05}",
        ),
        ("version: 1.0.0", "version: 1.1.0"),
    ],
    "ref_enum_widened": [
        ("enum: [EUR, USD]", "enum: [EUR, USD, GBP]"),
        ("version: 1.0.0", "version: 1.1.0"),
    ],
    "ref_enum_narrowed_and_changed": [
        ("enum: [EUR, USD]", "enum: [EUR, CHF]"),
        ("version: 1.0.0", "version: 2.0.0"),
    ],
    "type_and_format": [
        (
            "quantity: {type: integer, minimum: 1, maximum: 99}",
            "quantity: {type: number, minimum: 1, maximum: 99}",
        ),
        ("sku: {type: string, minLength: 1}", "sku: {type: string, format: uuid}"),
        ("version: 1.0.0", "version: 2.0.0"),
    ],
    "pattern_changed": [
        ("pattern: '^O-[0-9]+$'", "pattern: '^ORD-[0-9]+$'"),
        ("version: 1.0.0", "version: 2.0.0"),
    ],
    "event_type_changed": [
        ("const: OrderPlaced}", "const: OrderPlacedV2}"),
        ("eventType: OrderPlaced\n", "eventType: OrderPlacedV2\n"),
        ("version: 1.0.0", "version: 2.0.0"),
    ],
    "service_added_and_sends": [
        (
            "  shipping:\n    action: receive\n    channel: {$ref: '#/channels/ordersPlaced'}\n",
            "  audit:\n    action: receive\n    channel: {$ref: '#/channels/ordersPlaced'}\n"
            "    x-jetstream-consumer:\n      durable: audit\n      ack_policy: explicit\n"
            "      dead_letter: deadLetters\n"
            "  shipping:\n    action: receive\n    channel: {$ref: '#/channels/ordersPlaced'}\n"
            "    x-sends: [placeOrder]\n",
        ),
        ("version: 1.0.0", "version: 1.1.0"),
    ],
    "durable_renamed": [
        ("durable: billing", "durable: billing-v2"),
        ("version: 1.0.0", "version: 2.0.0"),
    ],
    "consumer_settings": [
        ("deliver_policy: all\n      ack_wait: PT30S", "deliver_policy: new\n      ack_wait: PT1M"),
        (
            "      max_deliver: 5\n      dead_letter: deadLetters\n  shipping",
            "      max_deliver: 3\n      dead_letter: deadLetters\n  shipping",
        ),
        ("version: 1.0.0", "version: 2.0.0"),
    ],
    "stream_limits_lowered": [
        ("max_age: P7D", "max_age: P1D"),
        ("max_bytes: 1048576", "max_bytes: 65536"),
        ("version: 1.0.0", "version: 2.0.0"),
    ],
    "channel_narrowed_to_one_region": [
        ("subjects: [orders.>]", "subjects: [orders.eu.>]"),
        ("address: orders.{region}.placed", "address: orders.eu.placed"),
        ("    parameters:\n      region:\n        enum: [eu, us]\n", ""),
        ("version: 1.0.0", "version: 2.0.0"),
    ],
    "parameter_values_added": [
        ("enum: [eu, us]", "enum: [eu, us, apac]"),
        ("version: 1.0.0", "version: 1.1.0"),
    ],
    "storage_and_retention": [
        (
            "    retention: limits\n    storage: file\n    max_age: P7D",
            "    retention: interest\n    storage: memory\n    max_age: P7D",
        ),
        ("version: 1.0.0", "version: 2.0.0"),
    ],
    "version_not_raised": [
        (
            "          note: {type: string, maxLength: 100}\n",
            "          note: {type: string, maxLength: 100}\n          coupon: {type: string}\n",
        )
    ],
    "message_added_to_channel": [
        (
            "      OrderPlaced:\n        $ref: '#/components/messages/OrderPlaced'\n",
            "      OrderPlaced:\n        $ref: '#/components/messages/OrderPlaced'\n      OrderCancelled:\n        $ref: '#/components/messages/OrderCancelled'\n",
        ),
        (
            "    DeadLetter:\n      contentType",
            "    OrderCancelled:\n      payload:\n        type: object\n        additionalProperties: false\n        required: [eventId, eventType]\n        properties:\n          eventId: {type: string, format: uuid}\n          eventType: {type: string, const: OrderCancelled}\n      examples:\n        - payload: {eventId: 24d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f70, eventType: OrderCancelled}\n        - payload: {eventId: 34d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f70, eventType: OrderCancelled}\n    DeadLetter:\n      contentType",
        ),
        ("version: 1.0.0", "version: 1.1.0"),
    ],
    "limits_raised_stream_added": [
        ("max_age: P7D", "max_age: P30D"),
        ("max_bytes: 1048576", "max_bytes: -1"),
        (
            "  ORDERS_DLQ:\n",
            "  AUDIT:\n    subjects: [audit.>]\n    retention: limits\n    storage: file\n    duplicate_window: PT2M\n  ORDERS_DLQ:\n",
        ),
        ("version: 1.0.0", "version: 1.0.1"),
    ],
    "descriptions_only": [
        (
            "    Money:\n      type: object",
            "    Money:\n      description: An amount in a currency.\n      type: object",
        )
    ],
}
for name, edits in cases.items():
    d = root / name
    d.mkdir(exist_ok=True)
    new = base
    for a, b in edits:
        assert a in new, (name, a)
        new = new.replace(a, b, 1)
    from generator.build import build
    from generator.diagnostics import SpecError
    from generator.load import load_text

    try:
        build(load_text(new, "x"))
    except SpecError as exc:
        assert all(d.code == "invalid-example" for d in exc.diagnostics), exc.diagnostics
        start = new.index("      examples:\n")
        end = new.index("\n    DeadLetter:\n") + 1
        new = (
            new[:start]
            + "      # examples dropped: the old ones no longer fit (the case is about the schema)\n"
            + new[end:]
        )
    (d / "old.yaml").write_text(base)
    (d / "new.yaml").write_text(new)
