// The guestbook's server configuration (the seeds' `server.nix`): nginx in front of a
// php-fpm pool, MariaDB behind it. A module in its own file, type-checked by
// defineModule, so a production configuration can import it just as the test does.
import { defineModule } from "vmrig";

const indexPhp = String.raw`<?php
// A classical guestbook: GET lists the posts (nothing at all when there are none),
// POST stores one and thanks the visitor.
$db = new mysqli("localhost", "goldenbook", "", "goldenbook");
if ($_SERVER["REQUEST_METHOD"] === "POST") {
    $stmt = $db->prepare("INSERT INTO posts (text) VALUES (?)");
    $stmt->bind_param("s", $_POST["text"]);
    $stmt->execute();
    echo "Thanks for your post!\n";
    exit;
}
foreach ($db->query("SELECT text FROM posts ORDER BY id") as $row) {
    echo "<p>", htmlspecialchars($row["text"]), "</p>\n";
}
`;

export default defineModule(({ config }) => ({
  networking: { firewall: { allowedTCPPorts: [80] } },
  environment: {
    systemPackages: ["php-mysql"],
    etc: { "goldenbook/index.php": { text: indexPhp } },
  },
  users: {
    users: { goldenbook: { isSystemUser: true, group: "goldenbook" } },
    groups: { goldenbook: {} },
  },
  services: {
    phpfpm: { pools: { goldenbook: { user: "goldenbook" } } },
    nginx: {
      enable: true,
      virtualHosts: {
        goldenbook: {
          root: "/etc/goldenbook",
          locations: {
            "/": { extraConfig: "index index.php;" },
            "~ \\.php$": {
              extraConfig: `include snippets/fastcgi-php.conf;\nfastcgi_pass unix:${config.services.phpfpm.pools.goldenbook!.socket};`,
            },
          },
        },
      },
    },
    mysql: {
      enable: true,
      initialDatabases: [
        { name: "goldenbook", schema: "CREATE TABLE posts (id INT AUTO_INCREMENT PRIMARY KEY, text TEXT NOT NULL);" },
      ],
      // the pool's user logs in through MariaDB's unix socket authentication
      ensureUsers: [{ name: "goldenbook", ensurePermissions: { "goldenbook.*": "ALL PRIVILEGES" } }],
    },
  },
}));
