//! The monolith's own storage: plain numeric ids in its own `legacy` schema, and its own copy
//! of each price, taken from the catalog the first time a product is asked for.

use serde_json::json;

use crate::support::spawn;

#[tokio::test]
async fn carts_and_orders_are_rows_of_the_legacy_schema_under_plain_numbers() {
    let app = spawn().await;
    let tee = app.product("Tee", 700, "USD").await;
    let first = app.create_cart().await;
    let second = app.create_cart().await;
    assert!(second.parse::<i64>().unwrap() > first.parse::<i64>().unwrap());
    app.add(&first, &tee, 3).await;
    let (currency, quantity): (String, i32) = sqlx::query_as(
        "SELECT c.currency::text, l.quantity FROM legacy.carts c
         JOIN legacy.cart_lines l ON l.cart_id = c.id WHERE c.id = $1::bigint",
    )
    .bind(&first)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((currency.as_str(), quantity), ("USD", 3));

    let order: serde_json::Value = app
        .checkout(
            "k",
            json!({"cart_id": first, "email": "shopper@example.com"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let (status, total): (String, i64) =
        sqlx::query_as("SELECT status, total FROM legacy.orders WHERE id = $1::bigint")
            .bind(order["id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), total), ("confirmed", 2100));
}

#[tokio::test]
async fn the_monolith_keeps_its_own_copy_of_a_price() {
    let app = spawn().await;
    let tee = app.product("Tee", 1000, "USD").await;
    let cart = app.create_cart().await;
    app.add(&cart, &tee, 1).await;
    let copied: i64 = sqlx::query_scalar("SELECT unit_price FROM legacy.products WHERE sku = $1")
        .bind(&tee)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(copied, 1000);

    // A catalog change does not reach the monolith's copy; a change to the copy does.
    sqlx::query("UPDATE catalog.products SET unit_price = 2000 WHERE sku = $1")
        .bind(&tee)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.cart(&cart).await["subtotal"], 1000);
    sqlx::query("UPDATE legacy.products SET unit_price = 1500 WHERE sku = $1")
        .bind(&tee)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.cart(&cart).await["subtotal"], 1500);
}
