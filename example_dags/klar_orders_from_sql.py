"""Orders straight from a PostgreSQL database: one JSON column, and a flat export mapped by ``transform=``.

- ``upload_orders``: the query builds Klar's order object itself with ``json_build_object`` (line items
  aggregated with ``json_agg``), one JSON column per row. Rows are streamed through a server-side
  cursor, 1000 at a time, never loaded whole.
- ``upload_flat_export``: a flat export (one row per order, snake_case columns, numeric ids) is read
  row by row as dicts of its columns, and ``transform=flat_to_order`` maps each row to a nested Klar
  order. A row the function cannot map is rejected with the function's error; the others go on.

Both queries end in ``ORDER BY`` a unique key, so a retried try resumes where the failed one stopped.
The database is the Airflow connection ``shop_db`` (e.g.
``AIRFLOW_CONN_SHOP_DB='postgres://user:password@host:5432/shop'``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import dag
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

from airflow_provider_klar.operators.klar import KlarUploadOperator

SHOP_DB = "shop_db"

# Stand-in for your shop's tables: 40 orders with 1 to 3 lines each, and a flat export of 30 orders.
# Delete it (and the task running it) in production.
SAMPLE_TABLES = """
DROP TABLE IF EXISTS shop_order_lines, shop_orders, shop_flat_export;
CREATE TABLE shop_orders (
    order_id text PRIMARY KEY,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    currency char(3) NOT NULL,
    financial_status text NOT NULL
);
CREATE TABLE shop_order_lines (
    order_id text REFERENCES shop_orders,
    line_no int,
    sku text,
    product_name text,
    unit_price numeric(10, 2),
    quantity int,
    tax_rate numeric(4, 3),
    PRIMARY KEY (order_id, line_no)
);
INSERT INTO shop_orders
SELECT 'PG-' || g,
       timestamptz '2025-01-01 08:00+00' + g * interval '7 minutes',
       timestamptz '2025-01-01 09:00+00' + g * interval '7 minutes',
       'EUR',
       CASE WHEN g % 10 = 0 THEN 'cancelled' ELSE 'paid' END
FROM generate_series(1, 40) AS g;
INSERT INTO shop_order_lines
SELECT 'PG-' || g, n, 'SKU-' || (g * 7 + n) % 50, 'Product ' || (g * 7 + n) % 50,
       9.90 + ((g + n) % 9) * 10, 1 + (g + n) % 3, 0.19
FROM generate_series(1, 40) AS g, generate_series(1, 1 + g % 3) AS n;
CREATE TABLE shop_flat_export (
    order_id bigint PRIMARY KEY,
    created_at timestamp NOT NULL,
    currency text NOT NULL,
    status text NOT NULL,
    customer_email text,
    sku text,
    product_name text,
    unit_price numeric(10, 2),
    quantity int,
    vat_rate numeric(4, 3)
);
INSERT INTO shop_flat_export
SELECT 90000 + g, timestamp '2025-01-01 09:00' + g * interval '11 minutes', 'EUR', 'paid',
       'buyer' || g || '@example.com', 'SKU-' || g % 20, 'Product ' || g % 20,
       19.90 + (g % 5) * 5, 1 + g % 2, 0.19
FROM generate_series(1, 30) AS g;
"""

# One JSON column: the query builds the whole order. Numbers stay numbers, ids stay strings.
ORDERS_SQL = """
SELECT json_build_object(
    'id', o.order_id,
    'createdAt', extract(epoch FROM o.created_at)::bigint,
    'updatedAt', extract(epoch FROM o.updated_at)::bigint,
    'currencyCodeIso3Letter', o.currency,
    'financialStatus', o.financial_status,
    'refundedLineItems', json_build_array(),
    'lineItems', (
        SELECT json_agg(json_build_object(
            'id', l.order_id || '-' || l.line_no,
            'sku', l.sku,
            'productName', l.product_name,
            'productGmv', l.unit_price,
            'quantity', l.quantity,
            'taxes', json_build_array(json_build_object(
                'taxRate', l.tax_rate,
                'taxAmount', round(l.unit_price - l.unit_price / (1 + l.tax_rate), 2)
            ))
        ) ORDER BY l.line_no)
        FROM shop_order_lines AS l
        WHERE l.order_id = o.order_id
    )
)
FROM shop_orders AS o
ORDER BY o.order_id
"""


def flat_to_order(row: dict[str, Any]) -> dict[str, Any]:
    """Map one row of the flat export (snake_case columns, one product per order) to a Klar order.

    The SQL reader already made numbers of ``numeric`` columns and Unix seconds of timestamps.
    """
    order_id = str(row["order_id"])  # Klar's ids are strings; the export's are numbers
    gross, rate = row["unit_price"], row["vat_rate"]
    return {
        "id": order_id,
        "createdAt": row["created_at"],
        "currencyCodeIso3Letter": row["currency"],
        "financialStatus": row["status"],
        "customer": {"email": row["customer_email"]},
        "refundedLineItems": [],
        "lineItems": [
            {
                "id": f"{order_id}-1",
                "sku": row["sku"],
                "productName": row["product_name"],
                "productGmv": gross,  # gross price of one unit
                "quantity": row["quantity"],
                # Per unit, and the rate as a fraction (0.19, not 19).
                "taxes": [{"taxRate": rate, "taxAmount": round(gross - gross / (1 + rate), 2)}],
            }
        ],
    }


@dag(
    dag_id="klar_orders_from_sql",
    schedule=None,  # manual runs only: the stand-in tables are fake; "@daily" for your real shop
    start_date=datetime(2025, 1, 1),
    tags=["klar", "example", "sql"],
)
def klar_orders_from_sql() -> None:
    sample_tables = SQLExecuteQueryOperator(
        task_id="create_sample_tables", conn_id=SHOP_DB, sql=SAMPLE_TABLES
    )

    upload_orders = KlarUploadOperator(
        task_id="upload_orders",
        resource="orders",
        sql=ORDERS_SQL,
        sql_conn_id=SHOP_DB,
    )
    upload_flat_export = KlarUploadOperator(
        task_id="upload_flat_export",
        resource="orders",
        sql="SELECT * FROM shop_flat_export ORDER BY order_id",
        sql_conn_id=SHOP_DB,
        transform=flat_to_order,
    )

    sample_tables >> [upload_orders, upload_flat_export]


klar_orders_from_sql()
