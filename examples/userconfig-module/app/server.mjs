// The demo application run by start_prim: answers GET / with the name of the node serving it.
import { createServer } from 'node:http';

const [node = 'unknown', port = '8080'] = process.argv.slice(2);
const server = createServer((req, res) => {
  res.setHeader('connection', 'close');
  res.end(JSON.stringify({ node, app: 'scripts' }) + '\n');
});
server.listen(Number(port), '0.0.0.0', () => console.log(`app listening on ${port} as ${node}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
