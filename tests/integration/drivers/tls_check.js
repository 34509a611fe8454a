// node-postgres over TLS (test_tls.py): verifies pgplex's certificate against the test CA
// and its name (localhost), runs one query, prints its answer.
// Usage: node tls_check.js HOST PORT USER PASSWORD DBNAME CA_FILE
const fs = require('fs');
const { Client } = require('pg');
const [host, port, user, password, database, ca] = process.argv.slice(2);
const client = new Client({
  host, port: Number(port), user, password, database,
  ssl: { ca: fs.readFileSync(ca), servername: 'localhost' },
});
client.connect()
  .then(() => client.query("SELECT 'node over tls' AS answer"))
  .then((result) => { console.log(result.rows[0].answer); return client.end(); })
  .catch((error) => { console.error(error.message); process.exit(1); });
