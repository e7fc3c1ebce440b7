"""A small stand-in for PostgREST (not packaged in Debian): the same read-only REST
view of one schema. GET /<table> answers the table's rows as a JSON array, queried as
the configured anonymous role. Reads PostgREST's own configuration format."""
import datetime
import decimal
import http.server
import json
import re
import sys

import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg2 import sql


def read_conf(path):
    conf = {}
    with open(path) as f:
        for line in f:
            m = re.match(r'\s*([\w-]+)\s*=\s*"?(.*?)"?\s*$', line)
            if m:
                conf[m.group(1)] = m.group(2)
    return conf


CONF = read_conf(sys.argv[1])
PORT = int(CONF.get("server-port", "3000"))


def plain(value):
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body, default=plain).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        table = self.path.split("?", 1)[0].strip("/")
        if not re.fullmatch(r"\w+", table):
            return self.answer(404, {"message": "not found"})
        try:
            with psycopg2.connect(CONF["db-uri"]) as conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(CONF["db-anon-role"])))
                cur.execute(sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(CONF["db-schema"]), sql.Identifier(table)))
                self.answer(200, cur.fetchall())
        except psycopg2.errors.UndefinedTable:
            self.answer(404, {"message": f'relation "{CONF["db-schema"]}.{table}" does not exist'})
        except psycopg2.errors.InsufficientPrivilege as e:
            self.answer(401, {"message": str(e).strip()})


http.server.ThreadingHTTPServer(("", PORT), Handler).serve_forever()
