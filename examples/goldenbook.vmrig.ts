// The seeds' "Leveraging NixOS Tests in your Project" (mayflower/goldenbook): a PHP
// guestbook on nginx + php-fpm + MariaDB on one VM. The server's configuration is the
// module in goldenbook/server.ts, shared with production as the post's server.nix is.
import { defineTest } from "vmrig";
import server from "./goldenbook/server.js";

export default defineTest({
  name: "golden-book-test",
  nodes: { server },
  async testScript({ server }) {
    // Wait for all services to finish starting
    await server.waitForUnit("multi-user.target");
    await server.waitForUnit("nginx");
    await server.waitForUnit("phpfpm-goldenbook");
    await server.waitForUnit("mysql");
    // Server should start out with no posts in the database and return an empty but successful response at first
    await server.succeed('[ -z "$(curl --fail localhost)" ]');
    // Making a post should succeed and the server should respond politely
    await server.succeed("curl --fail -F text=testpost localhost | grep Thanks");
    // And after that, the post should be displayed on the main page.
    await server.succeed("curl --fail localhost | grep testpost");
  },
});
