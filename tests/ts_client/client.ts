// Places and reads an order through a client generated from the gateway's own
// OpenAPI document (openapi-typescript types + openapi-fetch), as a TypeScript
// user would. Usage: node out/client.js BASE_URL CALLER_KEY IDEMPOTENCY_KEY
// Prints one JSON line: the order as placed and as read back.
import createClient from "openapi-fetch";
import type { paths } from "./schema.js";

const [baseUrl, key, idempotencyKey] = process.argv.slice(2);
if (!baseUrl || !key || !idempotencyKey) {
  throw new Error("usage: client.js BASE_URL CALLER_KEY IDEMPOTENCY_KEY");
}
const client = createClient<paths>({ baseUrl, headers: { "X-API-Key": key } });

const placed = await client.POST("/orders", {
  params: { header: { "Idempotency-Key": idempotencyKey } },
  body: { service: 1, link: "https://www.instagram.com/ts_client/", quantity: 100 },
});
if (placed.error !== undefined) {
  throw new Error(`placing failed: ${placed.error.error.code}: ${placed.error.error.message}`);
}
const order = placed.data;

const read = await client.GET("/orders/{id}", { params: { path: { id: order.id } } });
if (read.error !== undefined) {
  throw new Error(`reading failed: ${read.error.error.code}: ${read.error.error.message}`);
}
const status: string = read.data.state;
console.log(JSON.stringify({ placed: order, read: read.data, state: status, status: placed.response.status }));
