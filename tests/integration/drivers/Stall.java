// JDBC (PostgreSQL's driver): the sequence of pgplex's stall regression (test_drivers.py).
// Connects, cancels a pg_sleep(30) with Statement.cancel() from another thread, then writes
// a 64 MB bytea into a plain table and reads it back. Prints "ok"; a failure exits 1.
// Usage: java -cp postgresql.jar Stall.java HOST PORT USER PASSWORD DBNAME TABLE
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Arrays;
import java.util.Properties;

public class Stall {
    static final int SIZE = 64 * 1024 * 1024;

    static byte[] payload() {
        byte[] data = new byte[SIZE];
        for (int i = 0; i < SIZE; i++) data[i] = (byte) ((i * 7 + (i >> 13)) & 0xff);
        return data;
    }

    static void cancelledSleep(Connection conn) throws Exception {
        try (Statement sleep = conn.createStatement()) {
            Thread canceller = new Thread(() -> {
                try {
                    Thread.sleep(500);
                    sleep.cancel();
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            canceller.start();
            try {
                sleep.execute("SELECT pg_sleep(30)");
                throw new IllegalStateException("the sleep was not cancelled");
            } catch (SQLException e) {
                if (!"57014".equals(e.getSQLState())) throw e;
            }
            canceller.join(5000);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[4];
        Properties props = new Properties();
        props.setProperty("user", args[2]);
        props.setProperty("password", args[3]);
        props.setProperty("prepareThreshold", "0");  // named statements from the start
        String table = args[5];
        try (Connection conn = DriverManager.getConnection(url, props)) {
            try (Statement one = conn.createStatement()) {
                one.execute("SELECT 1");
            }
            cancelledSleep(conn);
            byte[] data = payload();
            try (PreparedStatement insert =
                         conn.prepareStatement("INSERT INTO " + table + " VALUES (2, ?)")) {
                insert.setBytes(1, data);
                insert.executeUpdate();
            }
            try (PreparedStatement select =
                         conn.prepareStatement("SELECT b FROM " + table + " WHERE id = 2");
                 ResultSet rows = select.executeQuery()) {
                if (!rows.next() || !Arrays.equals(rows.getBytes(1), data))
                    throw new IllegalStateException("the value came back different");
            }
        }
        System.out.println("ok");
    }
}
