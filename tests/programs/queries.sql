-- Queries of the sqlite check: aggregates, ordering, joins, window
-- functions, group_concat, subqueries; every result fully ordered.
SELECT count(*), sum(qty), printf('%.2f', sum(qty * price)), min(price), max(price) FROM orders;
SELECT tier, count(*) AS n, printf('%.3f', avg(price)) AS avg_price FROM orders JOIN customer ON customer.id = orders.customer GROUP BY tier ORDER BY tier;
SELECT city, count(DISTINCT customer.id) AS buyers, sum(qty) AS items FROM orders JOIN customer ON customer.id = orders.customer GROUP BY city ORDER BY items DESC, city LIMIT 15;
SELECT item, sum(qty) AS q FROM orders GROUP BY item ORDER BY q DESC, item LIMIT 10;
SELECT id, customer, price FROM orders ORDER BY price DESC, id LIMIT 10 OFFSET 100;
SELECT customer, total, rank FROM (SELECT customer, printf('%.2f', sum(qty * price)) AS total, rank() OVER (ORDER BY sum(qty * price) DESC) AS rank FROM orders GROUP BY customer) WHERE rank <= 10 ORDER BY rank, customer;
SELECT c.name, length(group_concat(o.item, ',')) AS len FROM customer c JOIN orders o ON o.customer = c.id WHERE c.tier = 3 GROUP BY c.id ORDER BY len DESC, c.name LIMIT 8;
SELECT count(*) FROM orders WHERE note LIKE '%fox%' AND qty > (SELECT avg(qty) FROM orders);
SELECT substr(note, 1, 10) AS k, count(*) FROM orders GROUP BY k ORDER BY 2 DESC, k LIMIT 5;
SELECT id, sum(price) OVER (ORDER BY id ROWS BETWEEN 50 PRECEDING AND CURRENT ROW) AS running FROM orders WHERE id % 9973 = 0 ORDER BY id;
UPDATE orders SET note = upper(note) || '!' WHERE qty % 7 = 0;
DELETE FROM orders WHERE price < 5;
SELECT count(*), sum(length(note)) FROM orders;
PRAGMA integrity_check;
